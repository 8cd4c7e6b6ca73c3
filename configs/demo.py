"""The demo: a teacher, then students with ce, kd, dkd and figkd, 3 seeds each, on embedded data.

  python launch.py --config=configs/demo.py --workdir=/tmp/figkd_demo

Uses scikit-learn's bundled 8x8 digits (no download). Its question: does distillation help a
student, and does FiGKD help it as much as KD and DKD? The budgets are chosen so that the
answer can be yes: the teacher (ResNet-20) trains on all 1,400 training images, the students
(ResNet-8) on the first 320 only (29 to 34 per class), where a student trained alone stays a few
points below the teacher; a student that beats its teacher alone cannot gain from it. Each
method runs with 3 seeds; the summary prints mean ± std of best and last top-1 over the seeds
and marks the differences from "ce" that a t-test over the seeds finds beyond their noise
(the 397-image test set is fixed: one image is 0.25 points). 13 runs: 6 min 37 s on 2 AMD EPYC
cores, compilation included.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset.name = "digits"
    # The students see 320 of the 1,400 training images; the teacher sees them all.
    config.dataset.train_split = "train[:320]"
    config.sweep.train_teacher = True
    config.sweep.teacher_train_split = "train"
    config.model = "resnet8"
    config.teacher.model = "resnet20"
    config.batch_size = 64
    config.eval_batch_size = 512
    config.optim.learning_rate = 0.05
    # 40 epochs of 5 steps for the students, decays after 75% and 90% of them as in the
    # 240-epoch protocol; the teacher's 20 epochs of 21 steps.
    config.num_epochs = 40
    config.optim.lr_decay_epochs = (30, 36)
    config.sweep.teacher_num_epochs = 20
    config.sweep.teacher_lr_decay_epochs = (14, 18)
    # DKD's warm-up: 20 of 240 epochs in the protocol, 3 of 40 here.
    config.method.dkd.warmup_epochs = 3
    config.log_every_steps = 100
    config.checkpoints_to_keep = 1
    config.sweep.methods = ("ce", "kd", "dkd", "figkd")
    config.sweep.seeds = (0, 1, 2)
    return config
