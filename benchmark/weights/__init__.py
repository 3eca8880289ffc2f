"""Backbones: timm model creation and pretrained weights from the hub, a local file, or Google/HF layouts.

Imports only the root modules.
"""
