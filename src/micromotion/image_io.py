"""Former home of `micromotion.io.images` (reading user images, writing them atomically); kept so that
`from micromotion.image_io import load_image` keeps working."""
from .io.images import (DEFAULT_MAX_PIXELS, IMAGE_FORMATS, MAX_PIXELS_ENV, ImageSource, array_to_image,  # noqa: F401
                        atomic_output, check_image_output, describe, load_image, max_pixels_limit, save_image,
                        to_rgb)
