"""Reading images from disk with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ImageError(ValueError):
    """An image file is missing, unreadable or not an image; the message names the file."""


def read_image(path: str | Path) -> np.ndarray:
    """Reads an image file as (H, W, 3) uint8 RGB, upright (the EXIF orientation of a photo is
    applied, as in training). Grayscale, palette and RGBA images are converted (alpha dropped);
    anything that is not an image raises ImageError naming the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{path}: cannot decode the image ({error})") from None
    array = np.asarray(rgb, dtype=np.uint8)
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"{path}: the image is empty ({array.shape[1]}x{array.shape[0]})")
    return array
