"""Operations with a hand-written CUDA kernel and a NumPy twin of the same signature."""
