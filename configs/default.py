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
    # Fine-grained datasets: decode each image once into host memory and crop from there
    # (figkd_jax.data.decoded; 10-14x less CPU per train image); False decodes the JPEGs
    # every epoch (the exact torchvision crops, with TensorFlow's JPEG decoder). None: True.
    config.dataset.decode_once = ml_collections.FieldReference(None, field_type=bool)
    # Side of the square uint8 canvas each train image is decoded into (0.31 MB per image
    # at 320; 4.6 GiB for Stanford Dogs' two splits with the eval crops). None: 320.
    config.dataset.cache_size = ml_collections.FieldReference(None, field_type=int)

    # Student architecture, one of figkd_jax.models.names().
    config.model = "resnet8"

    config.teacher = ml_collections.ConfigDict()
    # Teacher architecture; None for training without a teacher (method "ce").
    config.teacher.model = ml_collections.FieldReference(None, field_type=str)
    # Workdir of a finished teacher run, or a checkpoint directory written by
    # figkd_jax.tools.convert_torch / figkd_jax.tools.export. Exactly one is set when
    # teacher.model is set.
    config.teacher.workdir = ml_collections.FieldReference(None, field_type=str)
    config.teacher.checkpoint = ml_collections.FieldReference(None, field_type=str)
    # Which checkpoint of a teacher run to use: "last" or "best" (test top-1).
    config.teacher.which = "last"

    config.method = ml_collections.ConfigDict()
    # One of figkd_jax.trainer.methods.names(): "ce", "kd", "dkd", "figkd", "dist", "mlkd".
    config.method.name = "ce"
    # Distillation temperature T shared by kd, dkd, figkd and dist (without standardize;
    # mlkd has its own list).
    config.method.temperature = 4.0
    # Logit standardization, "+LS" (Sun et al., CVPR 2024; docs/protocol.md): the student
    # and teacher logits of the distillation term are z-scored, (z - mean) / (1e-7 + std)
    # with the Bessel-corrected std, and the term follows the authors' recipe: temperature
    # ls_temperature instead of method.temperature, and the weights of each block's ls_*
    # fields. Cross-entropy stays on the raw logits with its usual weight.
    config.method.standardize = False
    # Per-method weights and switches; only the chosen method's block is read.
    config.method.ce = ml_collections.ConfigDict(dict(ce_weight=1.0))
    config.method.kd = ml_collections.ConfigDict(
        # With standardize: temperature ls_temperature and KD weight ls_kd_weight (replacing
        # kd_weight), the authors' --base-temp 2 --kd-weight 9. configs/benchmarks.py sets
        # the values of each pair's published KD+LS run.
        dict(ce_weight=0.1, kd_weight=0.9, ls_temperature=2.0, ls_kd_weight=9.0)
    )
    config.method.dkd = ml_collections.ConfigDict(
        # warmup_epochs: the DKD term is scaled by min(epoch / warmup_epochs, 1),
        # epoch counted from 1. With standardize: temperature ls_temperature, and alpha
        # and beta multiplied by ls_weight_scale (the authors' --base-temp 2 --kd-weight 9).
        dict(
            ce_weight=1.0,
            alpha=1.0,
            beta=8.0,
            warmup_epochs=20,
            ls_temperature=2.0,
            ls_weight_scale=9.0,
        )
    )
    # DIST (Huang et al., NeurIPS 2022): beta * inter-class + gamma * intra-class
    # relation. CIFAR-100 setting of the authors' dist_cifar.yaml: T = 4 (the shared
    # temperature), DIST weight 2 on beta = gamma = 1, CE weight 1.
    config.method.dist = ml_collections.ConfigDict(dict(ce_weight=1.0, beta=2.0, gamma=2.0))
    # MLKD (Jin et al., CVPR 2023), as the authors' code (mdistiller KD defaults):
    # ce_weight x (CE(weak) + CE(strong)) + kd_weight x (instance + class + batch
    # levels) over `temperatures`; the first `strong_temperatures` of them use the
    # strong view in the second instance-level sum (see losses.mlkd_terms). Needs
    # the strong view (RandAugment) of each batch. With standardize (MLKD+LS, the LS
    # authors' --base-temp 2 --kd-weight 9): ls_temperature replaces the first of
    # `temperatures` and ls_kd_weight replaces kd_weight on every level; configs/benchmarks.py
    # sets the values of each pair's published MLKD+LS run.
    config.method.mlkd = ml_collections.ConfigDict(
        dict(
            ce_weight=0.1,
            kd_weight=0.9,
            temperatures=(4.0, 3.0, 5.0, 2.0, 6.0),
            strong_temperatures=3,
            ls_temperature=2.0,
            ls_kd_weight=9.0,
        )
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
            # With standardize (FiGKD+LS, this project's definition, docs/method.md): the
            # bands of the standardized logits, temperature ls_temperature, and figkd_weight
            # multiplied by ls_weight_scale, as DKD+LS does.
            ls_temperature=2.0,
            ls_weight_scale=9.0,
            # Order of the classes along the Haar axis (figkd_jax.trainer.class_order): "index"
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
    # Global batch size over all devices and processes. An epoch is
    # num_train // batch_size full batches of a fresh shuffle; the remainder is left out
    # (CIFAR-100: 781 steps, where the reference's loader has 782, the last of 16 images).
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
    # checkpoints, events and results; other files are left alone). With
    # "overwrite", a run none of whose checkpoints restores starts afresh (the
    # damaged checkpoints are kept, renamed <step>.damaged-<time>).
    config.on_changed_config = "refuse"

    # Several runs in one parent workdir (figkd_jax.trainer.sweep): one run per
    # (variant, seed), each in <workdir>/<variant>_seed<seed>. Empty tuples mean
    # a single run of config.method.name with config.seed directly in workdir.
    config.sweep = ml_collections.ConfigDict()
    # Variants: (name, {dotted field: value}) pairs, e.g.
    # (("kd", {"method.name": "kd"}), ("figkd_T8", {"method.name": "figkd",
    # "method.temperature": 8.0})); each field keeps the config's value unless overridden.
    config.sweep.variants = ()
    # A grid of variants: (dotted field, (value, ...)) pairs; one variant per combination,
    # named after the fields' last parts and values (e.g. "temperature2.0_level1"), after
    # the named variants.
    config.sweep.grid = ()
    # Without variants or grid: one variant per method, named after it.
    config.sweep.methods = ()
    config.sweep.seeds = ()
    # The variant whose mean the summary's differences (and their noise marks) are taken from.
    config.sweep.baseline = "ce"
    # Set by the sweep in each run's config: the name of the run's variant.
    config.sweep.variant = ml_collections.FieldReference(None, field_type=str)
    # Train the teacher (config.teacher.model, method "ce") first, in
    # <workdir>/teacher, and distil from it.
    config.sweep.train_teacher = False
    # The teacher's own epochs and decay epochs (None: the students' values).
    config.sweep.teacher_num_epochs = ml_collections.FieldReference(None, field_type=int)
    config.sweep.teacher_lr_decay_epochs = ml_collections.FieldReference(None, field_type=tuple)
    # The teacher's own base learning rate (None: the students' value). The benchmark
    # configs set the protocol's rate of the teacher architecture (0.05 on CIFAR-100,
    # where ShuffleNet and MobileNetV2 students train at 0.01).
    config.sweep.teacher_learning_rate = ml_collections.FieldReference(None, field_type=float)
    # The teacher's train split (None: the students' config.dataset.train_split), e.g. all
    # of it while the students see a slice.
    config.sweep.teacher_train_split = ml_collections.FieldReference(None, field_type=str)
    # The epochs and base learning rate of the sweep's "mlkd" runs (None: the other methods'
    # values). The CIFAR-100 and ImageNet configs set those MLKD's authors released per pair
    # (figkd_jax.trainer.protocol.MLKD_SOLVERS), which a run of method=mlkd gets directly.
    config.sweep.mlkd_num_epochs = ml_collections.FieldReference(None, field_type=int)
    config.sweep.mlkd_learning_rate = ml_collections.FieldReference(None, field_type=float)

    return config
