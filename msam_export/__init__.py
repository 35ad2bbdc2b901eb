"""msam-export: MedficientSAM / LiteMedSAM checkpoints to verified CPU artifacts."""

__version__ = "0.1.0"
