from typing import List


def running_mean(values: List[float], window: int = 3) -> List[float]:
    """Return the mean of each window of `window` consecutive values.

    >>> running_mean([1.0, 2.0, 3.0, 4.0], 2)
    [1.5, 2.5, 3.5]
    """
    if window <= 0:
        raise ValueError("window must be positive")
    out = []
    total = sum(values[:window])
    out.append(total / window)
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        out.append(total / window)
    return out


if __name__ == "__main__":
    print(running_mean([3, 1, 4, 1, 5, 9, 2, 6], 3))
