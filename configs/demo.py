"""The demo: teacher, then students with ce, kd, dkd and figkd, on embedded data.

  python launch.py --config=configs/demo.py --workdir=/tmp/figkd_demo

Uses scikit-learn's bundled 8x8 digits (no download): trains the teacher into
<workdir>/teacher, distils it into a small student with each method (one run
each in <workdir>/<method>_seed0), and prints their test accuracies and wall
times. About 2 to 3 minutes on 2 CPU cores, compilation included.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset.name = "digits"
    config.model = "resnet8"
    config.teacher.model = "resnet20"
    config.batch_size = 64
    config.eval_batch_size = 512
    config.optim.learning_rate = 0.05
    # Students get a short budget; the teacher is trained five times longer,
    # as teachers are trained to convergence before anything is distilled.
    config.num_epochs = 3
    config.optim.lr_decay_epochs = (2,)
    config.sweep.teacher_num_epochs = 15
    config.sweep.teacher_lr_decay_epochs = (10, 13)
    config.method.dkd.warmup_epochs = 1
    config.log_every_steps = 100
    config.checkpoints_to_keep = 1
    config.sweep.train_teacher = True
    config.sweep.methods = ("ce", "kd", "dkd", "figkd")
    return config
