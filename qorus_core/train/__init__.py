"""Training: losses, optimizers, clipping, schedules, the Trainer and checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .losses import CrossEntropyLoss, Loss, MSELoss
from .optimizers import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from .schedules import Constant, Cosine, LinearWarmup, Schedule, make_schedule
from .trainer import Trainer

__all__ = ["Trainer", "Loss", "MSELoss", "CrossEntropyLoss", "Optimizer", "SGD", "Adam",
           "AdamW", "clip_grad_norm", "Schedule", "Constant", "LinearWarmup", "Cosine",
           "make_schedule", "save_checkpoint", "load_checkpoint"]
