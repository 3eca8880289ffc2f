"""A benchmark of fine-tuning strategies for pretrained timm Vision Transformers."""
