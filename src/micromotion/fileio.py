"""Former home of `micromotion.io.files` (our safetensors formats); kept so that old imports keep working."""
from .io.files import check_state_dict, read_safetensors, save_safetensors  # noqa: F401
