"""Write the README's example files into a folder (default: the current one): ``flowers.csv``
(300 rows, 4 features, 3 named species) and ``blobs.npz`` (240 training and 60 test rows, 5
features, 3 classes), each three Gaussian clusters drawn from a fixed seed, and ``prices.csv``
(300 rows, 3 features, a price to predict: a regression), so the README's ``gpumlp train``
runs on them print what it shows.

    python scripts/example_data.py [FOLDER]
"""

import sys
from pathlib import Path

import numpy as np

SPECIES = ("setosa", "versicolor", "virginica")
COLUMNS = "sepal_length,sepal_width,petal_length,petal_width,species"


def clusters(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 rows (n, d) around 3 centres drawn from N(0, 2²), and their classes (n,)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 2.0, (3, d))
    y = rng.integers(0, 3, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


def prices(seed: int, n: int) -> str:
    """``n`` rows of a house's floor area (m²), rooms and age (years), and its price (in
    thousands, to one decimal: not integers, so a regression), a noisy function of them."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 200, n)
    rooms = np.clip(np.round(area / 35 + rng.normal(0, 0.7, n)), 1, 8)
    age = rng.uniform(0, 80, n)
    price = 60 + 2.4 * area + 12 * rooms - 0.9 * age + 0.004 * (area - 120) ** 2
    price += rng.normal(0, 25, n)
    rows = [
        f"{a:.0f},{r:.0f},{g:.0f},{p:.1f}"
        for a, r, g, p in zip(area, rooms, age, price, strict=True)
    ]
    return "\n".join(["area,rooms,age,price", *rows]) + "\n"


def write(folder: Path) -> list[Path]:
    """Write ``flowers.csv``, ``blobs.npz`` and ``prices.csv`` into ``folder``; their paths."""
    X, y = clusters(7, 300, 4)
    rows = [",".join([*(f"{v:.2f}" for v in x), SPECIES[k]]) for x, k in zip(X, y, strict=True)]
    flowers = folder / "flowers.csv"
    flowers.write_text("\n".join([COLUMNS, *rows]) + "\n")
    X, y = clusters(8, 300, 5)
    blobs = folder / "blobs.npz"
    np.savez(blobs, X=X[:240], y=y[:240], X_test=X[240:], y_test=y[240:])
    houses = folder / "prices.csv"
    houses.write_text(prices(9, 300))
    return [flowers, blobs, houses]


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(f"wrote {path}")
