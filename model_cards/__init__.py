"""Model-card templates, installed as ``grace_st.model_cards`` (package data only, no code)."""
