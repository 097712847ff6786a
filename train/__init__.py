"""GRACE training with TRL's GRPO (installed as ``grace_st.train``; needs the ``train`` extra)."""
