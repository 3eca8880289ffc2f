"""Images in: the datasets and their splits, batches built on the device, user image files, rendered glyphs.

Imports only the root modules (errors, registry, limits, parsing, provenance, config).
"""
