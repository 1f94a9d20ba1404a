"""Data sets: MNIST (read, fetched and cached), tables (CSV, ``.npz``, ``.npy``), images
made to look like MNIST digits, and the data a run names."""
