"""Everything micromotion reads from and writes to disk, in one place.

`files`: our safetensors formats (one header convention), the one atomic writer, the one fingerprint of a
generator or any module, and the cache root `home()`. `pickle`: the restricted unpicklers for foreign
checkpoints. `dlib`: dlib's own binary serialization (its dnn model files), read without dlib. `images`:
reading user images robustly, writing images atomically.
"""
