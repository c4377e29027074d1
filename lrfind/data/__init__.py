"""kohya-layout datasets: scanning, aspect-ratio buckets, image loading, dataset checks."""
