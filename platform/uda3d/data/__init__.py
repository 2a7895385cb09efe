"""BraTS-layout discovery, validation, preprocessing, caching and torch datasets."""
