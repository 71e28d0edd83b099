"""Training: losses, metrics, optimizers, clipping, schedules, callbacks, the Trainer and
checkpoints."""

from .callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from .checkpoint import load_checkpoint, save_checkpoint
from .losses import (
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    Loss,
    MSELoss,
)
from .metrics import Metric, get_metric
from .optimizers import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from .schedules import Constant, Cosine, LinearWarmup, Schedule, make_schedule
from .trainer import Trainer

__all__ = ["Trainer", "Loss", "MSELoss", "CrossEntropyLoss", "L1Loss", "HuberLoss",
           "BCEWithLogitsLoss", "KLDivLoss", "Metric", "get_metric", "Callback", "EarlyStopping",
           "ReduceLROnPlateau", "ModelCheckpoint", "Optimizer", "SGD", "Adam",
           "AdamW", "clip_grad_norm", "Schedule", "Constant", "LinearWarmup", "Cosine",
           "make_schedule", "save_checkpoint", "load_checkpoint"]
