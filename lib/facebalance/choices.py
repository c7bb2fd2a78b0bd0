"""The valid values of choice params, shared by config validation and the code using them.

They live apart from the algorithms so that ``config`` (imported by every stage) does not
import the algorithms, and a change to one reruns only the stages that run it.
"""

STRATEGIES = ("baseline", "reweight", "oversample", "mixup", "cutmix", "val_attention",
              "gan_complement", "gan_gz_only")
REWEIGHT_MODES = ("equal_cells", "independence", "within_class")
BOUNDARY_METHODS = ("svm", "logistic")
COMPLEMENT_MODES = ("paper", "perp", "on_hyperplane")
COMPLEMENT_SHELLS = ("none", "rescale", "cap")
