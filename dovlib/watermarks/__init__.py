"""Dataset watermarks behind one interface (see ``base.py``): SSCL-BW and the baselines of SSCL-BW's Table I."""

from .base import WATERMARKS, DatasetWatermark, get_watermark, register, select_indices

__all__ = ["DatasetWatermark", "WATERMARKS", "get_watermark", "register", "select_indices"]
