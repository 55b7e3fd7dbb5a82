"""Import every method module so that it registers itself (add new modules here)."""
import importlib

for _name in ("badnets", "blended", "wanet", "ubw_p", "label_consistent", "sleeper_agent", "ubw_c", "sscl_bw"):
    try:
        importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as exc:  # a method module not written yet
        if exc.name != f"{__package__}.{_name}":
            raise
