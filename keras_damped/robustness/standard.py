"""AutoAttack's standard settings (Croce & Hein 2020, the official
fra31/auto-attack `version="standard"`): their one home. `Budget`'s defaults,
the AutoAttack runner and the command line's defaults and help read them."""

APGD_STEPS = 100  # iterations of APGD-CE and of each APGD-T target
TARGET_CLASSES = 9  # APGD-T's target classes
SQUARE_QUERIES = 5000  # Square's queries
SQUARE_P_INIT = 0.8  # Square's initial fraction of pixels per square
RESTARTS = 1  # random restarts of each APGD run
