"""Default configuration: every field of a run, documented in one place.

Benchmark configs import this module and override a few fields. Launch:

  python launch.py --config=configs/default.py --workdir=/tmp/figkd_default

which trains a ResNet-8 on the embedded digits data with cross-entropy only.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # Seed of parameter initialisation, data order and augmentation.
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    # One of figkd_jax.data.names().
    config.dataset.name = "digits"
    # TFDS data directory (local or gs://); None uses the TFDS default.
    config.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
    # Where manually downloaded archives are read; None: <data_dir>/downloads/manual.
    config.dataset.manual_dir = ml_collections.FieldReference(None, field_type=str)
    # Split names; None uses the dataset's default train/test split.
    config.dataset.train_split = ml_collections.FieldReference(None, field_type=str)
    config.dataset.eval_split = ml_collections.FieldReference(None, field_type=str)

    # Student architecture, one of figkd_jax.models.names().
    config.model = "resnet8"

    config.teacher = ml_collections.ConfigDict()
    # Teacher architecture; None for training without a teacher (method "ce").
    config.teacher.model = ml_collections.FieldReference(None, field_type=str)
    # Workdir of a finished teacher run, or a checkpoint directory written by
    # figkd_jax.convert_torch / figkd_jax.export. Exactly one is set when
    # teacher.model is set.
    config.teacher.workdir = ml_collections.FieldReference(None, field_type=str)
    config.teacher.checkpoint = ml_collections.FieldReference(None, field_type=str)
    # Which checkpoint of a teacher run to use: "last" or "best" (test top-1).
    config.teacher.which = "last"

    config.method = ml_collections.ConfigDict()
    # One of figkd_jax.methods.names(): "ce", "kd", "dkd", "figkd".
    config.method.name = "ce"
    # Distillation temperature T shared by kd, dkd and figkd.
    config.method.temperature = 4.0
    # Logit standardization (Sun et al., CVPR 2024): z-score the student and
    # teacher logits before the distillation term (cross-entropy stays on raw logits).
    config.method.standardize = False
    # Per-method weights and switches; only the chosen method's block is read.
    config.method.ce = ml_collections.ConfigDict(dict(ce_weight=1.0))
    config.method.kd = ml_collections.ConfigDict(dict(ce_weight=0.1, kd_weight=0.9))
    config.method.dkd = ml_collections.ConfigDict(
        # warmup_epochs: the DKD term is scaled by min(epoch / warmup_epochs, 1),
        # epoch counted from 1.
        dict(ce_weight=1.0, alpha=1.0, beta=8.0, warmup_epochs=20)
    )
    config.method.figkd = ml_collections.ConfigDict(
        dict(
            ce_weight=1.0,
            figkd_weight=1.0,
            # "high" (FiGKD), "low" (ablation) or "all" (equals vanilla KD).
            band="high",
            # Haar decomposition level, 1 <= level <= max level of the class count.
            level=1,
            # "logits": bands reconstructed in the logit domain; "coefficients":
            # the wavelet coefficients themselves.
            domain="logits",
            # Padding of odd lengths: "symmetric", "zero" or "periodization".
            mode="symmetric",
            # Order of the classes along the Haar axis (figkd_jax.class_order): "index"
            # (dataset indices), "random" (seeded by config.seed: the control), "superclass"
            # (CIFAR-100's coarse classes contiguous), "teacher" (similar classes of the
            # frozen teacher as neighbours), or a saved class_order.json or run workdir.
            class_order="index",
        )
    )

    config.optim = ml_collections.ConfigDict()
    # SGD with PyTorch semantics: weight decay added to the gradient of every
    # parameter before momentum (not Nesterov).
    config.optim.learning_rate = 0.05
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    # The learning rate is multiplied by lr_decay_rate after each of these
    # epochs (epoch-wise, as the reference: the first decay applies from epoch
    # lr_decay_epochs[0] + 1), evaluated per step.
    config.optim.lr_decay_epochs = (150, 180, 210)
    config.optim.lr_decay_rate = 0.1

    config.num_epochs = 240
    # Global batch size over all devices and processes.
    config.batch_size = 64
    # Batch size of evaluation (padded and masked: no example is dropped).
    config.eval_batch_size = 256
    # Compute dtype of activations: "float32" or "bfloat16". Parameters,
    # optimiser state, losses and batch statistics stay float32.
    config.dtype = "float32"

    # Where train batches are made: "host" (TensorFlow pipeline), "device"
    # (split uploaded once, gathered and augmented inside the step; the same
    # batches up to float rounding) or "auto" (device on accelerators for the
    # fixed-resolution datasets digits, cifar100 and tiny_imagenet).
    config.input_on_device = "auto"
    # Train steps per dispatch (one lax.scan); > 1 needs on-device input.
    # Calls stop at epoch ends and log steps, so those keep their places.
    config.steps_per_dispatch = 1

    # Console and TensorBoard interval for training metrics, in steps.
    config.log_every_steps = 50
    # Keep this many most recent epoch checkpoints, plus the best one.
    config.checkpoints_to_keep = 2
    # Stop after this many consecutive steps with non-finite loss or gradients
    # (such steps are skipped, never applied).
    config.max_consecutive_nonfinite_steps = 10
    # Stop after this many training steps in this process (None: run to the
    # end). For smoke tests and timing; the run stays resumable.
    config.max_steps = ml_collections.FieldReference(None, field_type=int)

    # What to do when --workdir already holds a run whose config differs
    # (a run with the same config is always resumed): "refuse", "continue"
    # (resume it under the new config) or "overwrite" (delete that run's
    # checkpoints, events and results; other files are left alone).
    config.on_changed_config = "refuse"

    # Several runs in one parent workdir (figkd_jax.sweep): one run per
    # (method, seed), each in <workdir>/<method>_seed<seed>. Empty tuples mean
    # a single run of config.method.name with config.seed directly in workdir.
    config.sweep = ml_collections.ConfigDict()
    config.sweep.methods = ()
    config.sweep.seeds = ()
    # Train the teacher (config.teacher.model, method "ce") first, in
    # <workdir>/teacher, and distil from it.
    config.sweep.train_teacher = False
    # The teacher's own epochs and decay epochs (None: the students' values).
    config.sweep.teacher_num_epochs = ml_collections.FieldReference(None, field_type=int)
    config.sweep.teacher_lr_decay_epochs = ml_collections.FieldReference(None, field_type=tuple)
    # The teacher's train split (None: the students' config.dataset.train_split), e.g. all
    # of it while the students see a slice.
    config.sweep.teacher_train_split = ml_collections.FieldReference(None, field_type=str)

    return config
