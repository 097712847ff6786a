"""ModelMeta entries for GRACE models, in the form of mteb's ``mteb/models/model_implementations/*.py`` files.

To propose a released GRACE model upstream, copy this file to ``mteb/models/model_implementations/grace_models.py``
in a fork of mteb, fill in the released repo id, revision (commit sha), release date and the figures the
``grace_st.grace_model_meta(folder)`` helper prints for the saved folder, and open a pull request. The loader keeps
mteb free of a dependency on ``grace-st``: a GRACE folder carries its own module code, so mteb's
sentence-transformers wrapper loads it with ``trust_remote_code=True``.

The entry below describes the quickstart model of this repository (the embedded SmolLM2-135M-Instruct trained on
WordNet); its figures were read from the saved folder with ``grace_model_meta``. It is not on the Hub yet, so
``name`` and ``revision`` are placeholders to replace on release.
"""

from __future__ import annotations

from functools import partial

from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper


GRACE_CITATION = """@inproceedings{sun2026grace,
  title     = {GRACE: Generative Representation Learning via Contrastive Policy Optimization},
  author    = {Sun, Jiashuo and others},
  booktitle = {International Conference on Learning Representations},
  year      = {2026},
  url       = {https://arxiv.org/abs/2510.04506}
}"""

grace_smollm2_135m_wordnet = ModelMeta(
    loader=partial(SentenceTransformerEncoderWrapper, trust_remote_code=True),
    name="grace-st/grace-smollm2-135m-wordnet",  # placeholder until released
    revision="0000000000000000000000000000000000000000",  # placeholder: the released commit sha
    release_date="2026-11-25",
    languages=["eng-Latn"],
    n_parameters=134_515_008,
    memory_usage_mb=513.1,
    max_tokens=1024,
    embed_dim=576,
    license="apache-2.0",
    open_weights=True,
    public_training_code="https://github.com/GasolSun36/GRACE",
    public_training_data="https://wordnet.princeton.edu/",
    framework=["Sentence Transformers", "PyTorch"],
    reference="https://arxiv.org/abs/2510.04506",
    similarity_fn_name=ScoringFunction.COSINE,
    use_instructions=True,
    training_datasets=set(),
    adapted_from="HuggingFaceTB/SmolLM2-135M-Instruct",
    citation=GRACE_CITATION,
)
