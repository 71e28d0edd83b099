"""Model and data IO: safetensors (mmap, zero-copy, atomic writes) and data set loaders."""
