"""``python -m grace_st.train --config X.yaml`` (and ``accelerate launch -m grace_st.train ...``)."""

from .cli import main


raise SystemExit(main())
