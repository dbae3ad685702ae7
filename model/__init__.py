"""Draftroom's model package: model families, image guidance, embedding mixing and the shared engine."""
