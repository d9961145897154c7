"""Losses, patch sampling, augmentation and training loops (torch)."""
