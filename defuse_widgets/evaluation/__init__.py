"""Methods a user may pick instead of or beside Defuse, and the paper's reproductions.

* :mod:`~defuse_widgets.evaluation.debiasing`: debiasing methods trained on the same data;
* :mod:`~defuse_widgets.evaluation.slice_discovery`: slice-discovery peers;
* :mod:`~defuse_widgets.evaluation.label_issues`: label-issue detection;
* :mod:`~defuse_widgets.evaluation.reproduce`: the paper's datasets and models, as the
  reproduction notebooks use them.

The planted-bug benchmark that compares them with Defuse lives in the repository's
``benchmarks/harness/``, not in the installed package.
"""
