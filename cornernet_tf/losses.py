"""The CornerNet training loss, as the official `AELoss` (models/py_utils/kp.py) computes it.

Layouts (NHWC, the model's `all_stacks=True` output; S stacks, B images, K = max objects):
    predictions:
        tl_heatmap, br_heatmap (S,B,h,w,C) logits before the sigmoid;
        tl_embedding, br_embedding (S,B,h,w,1);
        tl_offset, br_offset (S,B,h,w,2), channel 0 = x, 1 = y.
        Maps without the stack axis, (B,h,w,C), are taken as one stack.
    targets (a batch of `targets.encode_targets`):
        tl_heatmap, br_heatmap (B,h,w,C) float, 1 exactly at the corners;
        tl_index, br_index (B,K) int, flat y * w + x;
        tl_offset, br_offset (B,K,2) float (x, y);
        mask (B,K) bool (or any integer type, nonzero = valid object).

Terms, per stack (float32, in the official op order):
    focal:  p = clip(sigmoid(logit), 1e-4, 1 - 1e-4); pos = gt == 1 exactly, neg = gt < 1;
            -(sum_pos log(p) (1-p)^2 + sum_neg log(1-p) p^2 (1-gt)^4) / num_pos, with num_pos the
            count of gt == 1 over the whole batch tensor, and no division when num_pos == 0.
            Computed for tl and br.
    pull:   e = (t_tl + t_br) / 2 per object; for each image i with N_i objects
            sum_k [(t_tl - e)^2 + (t_br - e)^2] / (N_i + 1e-4), summed over the images.
    push:   for each image, sum over ordered pairs (j, k) of its objects, j == k included, of
            (relu(1 - |e_j - e_k|) - 1 / (N_i + 1e-4)) / (N_i (N_i - 1) + 1e-4), summed over the
            images. For N_i >= 2 this is about the mean over j != k of relu(1 - |e_j - e_k|); for
            N_i == 1 it is the constant (1 - 1/(1 + 1e-4)) / 1e-4, 1.000166 in float32 (zero
            gradient); an image without objects contributes nothing.
    offset: smooth-L1 (beta 1) between the offset map at the corner and the target, summed over
            x, y and the valid objects of the batch, / (valid objects in the batch + 1e-4).
            Computed for tl and br.
`cornernet_loss` returns focal and offset summed over tl, br and the stacks, pull and push summed
over the stacks and multiplied by their weights, and total = (focal + pull + push + offset) / S.

CornerNet-Saccade (CornerNet-Lite's `CornerNet_Saccade_Loss`, models/py_utils/losses.py) adds, when
the predictions carry attention maps:
    predictions: attention_0, attention_1, attention_2 (S,B,h,w,1) logits, strides 16, 8, 4
        (16, 32, 64 cells for a 255 input), or (B,h,w,1) for one stack;
    targets: attention_0..2 (B,h,w,1) in {0, 1} (1 at the cell of each object's centre on the
        map of its size, see data/saccade.py); optionally tl_valid, br_valid (B,h,w,C), 0 around
        the corners of the objects the sampling ignores (cut by the crop or smaller than 16
        pixels), 1 elsewhere.
    focal:     with tl_valid / br_valid, both sums are taken over the valid cells only (num_pos
               still counts every gt == 1): the official _focal_loss_mask.
    attention: the focal loss above on sigmoid(attention_i) against its binary target (so
               (1 - gt)^4 = 1 on every negative), per stack and map, num_pos counted per map over
               the batch; averaged over the stacks, summed over the maps.
    total = (focal + attention + pull + push + offset) / S: the attention term is divided by the
    stacks twice, as in the official code.

Every count (num_pos, N_i, the offset's object count) is over the tensors given, so under
tf.distribute each replica computes the loss of its own part of the batch, as each GPU does in the
official DataParallel training. Unlike the official code, a batch of one image works.
"""

from __future__ import annotations

import tensorflow as tf

CORNERS = ("tl", "br")
ATTENTION_PREFIX = "attention_"
_EPS = 1e-4


def gather_at(maps, index) -> tf.Tensor:
    """Values of `maps` (..., B, h, w, C) at the flat positions `index` (B, K) = y * w + x.

    Returns (..., B, K, C); the leading axes (e.g. the stack axis) are broadcast over.
    """
    maps = tf.convert_to_tensor(maps)
    index = tf.cast(index, tf.int32)
    shape = tf.shape(maps)
    rank = maps.shape.rank
    flat = tf.reshape(maps, tf.concat([shape[:-3], [shape[-3] * shape[-2], shape[-1]]], axis=0))
    lead = shape[:-3]  # (..., B)
    index = tf.broadcast_to(index, tf.concat([lead, tf.shape(index)[-1:]], axis=0))
    return tf.gather(flat, index, axis=rank - 3, batch_dims=rank - 3)


def focal_loss(logits, gt, valid=None) -> tf.Tensor:
    """Per-stack focal loss: logits (S,B,h,w,C), gt (B,h,w,C) -> (S,).

    valid (B,h,w,C), optional: 1 where a cell counts, 0 where it is ignored (the official
    _focal_loss_mask); it weights both sums but not num_pos.
    """
    gt = tf.cast(gt, tf.float32)
    p = tf.clip_by_value(tf.sigmoid(tf.cast(logits, tf.float32)), _EPS, 1.0 - _EPS)
    pos = tf.equal(gt, 1.0)
    neg = tf.less(gt, 1.0)
    pos_term = tf.math.log(p) * tf.square(1.0 - p)
    neg_term = tf.math.log(1.0 - p) * tf.square(p) * tf.pow(1.0 - gt, 4.0)
    if valid is not None:
        valid = tf.cast(valid, tf.float32)
        pos_term, neg_term = pos_term * valid, neg_term * valid
    axes = [-4, -3, -2, -1]
    pos_sum = tf.reduce_sum(tf.where(pos, pos_term, 0.0), axis=axes)
    neg_sum = tf.reduce_sum(tf.where(neg, neg_term, 0.0), axis=axes)
    num_pos = tf.reduce_sum(tf.cast(pos, tf.float32))
    # num_pos == 0 leaves pos_sum == 0 and -neg_sum undivided, as the official branch does.
    return -(pos_sum + neg_sum) / tf.maximum(num_pos, 1.0)


def embedding_losses(tl_tag, br_tag, mask) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-stack pull and push (unweighted): tags (S,B,K) gathered at the corners, mask (B,K).

    Returns (pull, push), each (S,).
    """
    valid = tf.cast(mask, tf.bool)
    num = tf.reduce_sum(tf.cast(valid, tf.float32), axis=-1)  # (B,)
    mean = (tl_tag + br_tag) / 2.0
    per_object_norm = num[:, None] + _EPS  # (B,1)
    pull_terms = (
        tf.square(tl_tag - mean) / per_object_norm + tf.square(br_tag - mean) / per_object_norm
    )
    pull = tf.reduce_sum(tf.where(valid, pull_terms, 0.0), axis=[-2, -1])

    pairs = valid[:, :, None] & valid[:, None, :]  # (B,K,K)
    dist = tf.nn.relu(1.0 - tf.abs(mean[..., :, None] - mean[..., None, :]))  # (S,B,K,K)
    num_b = num[:, None, None]
    dist = dist - 1.0 / (num_b + _EPS)
    dist = dist / ((num_b - 1.0) * num_b + _EPS)
    push = tf.reduce_sum(tf.where(pairs, dist, 0.0), axis=[-3, -2, -1])
    return pull, push


def offset_loss(offset, target, mask) -> tf.Tensor:
    """Per-stack smooth-L1 offset loss: offset (S,B,K,2) gathered, target (B,K,2), mask (B,K)."""
    valid = tf.cast(mask, tf.bool)
    num = tf.reduce_sum(tf.cast(valid, tf.float32))
    diff = tf.abs(offset - tf.cast(target, tf.float32))
    smooth = tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5)
    total = tf.reduce_sum(tf.where(valid[..., None], smooth, 0.0), axis=[-3, -2, -1])
    return total / (num + _EPS)


def attention_keys(tensors) -> list[str]:
    """The attention map keys of a predictions or targets dict, by scale: attention_0, ..."""
    keys = [key for key in tensors if key.startswith(ATTENTION_PREFIX)]
    return sorted(keys, key=lambda key: int(key[len(ATTENTION_PREFIX) :]))


def attention_loss(logits, gt) -> tf.Tensor:
    """Per-stack, per-map attention focal loss (CornerNet-Saccade), unnormalised.

    logits: a sequence of M attention maps (S,B,h_m,w_m,1) (or (B,h_m,w_m,1) for one stack);
    gt: the M binary targets (B,h_m,w_m,1). Returns (S, M): the focal loss of each stack's map,
    num_pos counted per map over the batch. The official term is the sum over maps of the mean
    over stacks, `tf.reduce_sum(attention_loss(...)) / S`.
    """
    if len(logits) != len(gt):
        raise ValueError(f"{len(logits)} attention maps but {len(gt)} attention targets")
    per_map = []
    for logit, target in zip(logits, gt, strict=True):
        logit = tf.cast(logit, tf.float32)
        per_map.append(focal_loss(logit[None] if logit.shape.rank == 4 else logit, target))
    return tf.stack(per_map, axis=-1)


def loss_terms(predictions, targets) -> dict[str, tf.Tensor]:
    """Unweighted per-stack terms: focal (S,2) [stack, tl/br], pull (S,), push (S,),
    offset (S,2) [stack, tl/br]; with attention maps in the predictions also attention (S,M)
    [stack, map] (`attention_loss`). The targets' tl_valid / br_valid, when present, mask the
    heatmap focal loss."""
    preds = {}
    for key, value in predictions.items():
        value = tf.cast(value, tf.float32)
        preds[key] = value[None] if value.shape.rank == 4 else value
    mask = targets["mask"]
    focal, offset, tags = [], [], {}
    for corner in CORNERS:
        focal.append(
            focal_loss(
                preds[f"{corner}_heatmap"],
                targets[f"{corner}_heatmap"],
                targets.get(f"{corner}_valid"),
            )
        )
        index = targets[f"{corner}_index"]
        tags[corner] = gather_at(preds[f"{corner}_embedding"], index)[..., 0]
        gathered = gather_at(preds[f"{corner}_offset"], index)
        offset.append(offset_loss(gathered, targets[f"{corner}_offset"], mask))
    pull, push = embedding_losses(tags["tl"], tags["br"], mask)
    terms = {
        "focal": tf.stack(focal, axis=-1),
        "pull": pull,
        "push": push,
        "offset": tf.stack(offset, axis=-1),
    }
    keys = attention_keys(preds)
    if keys:
        missing = [key for key in keys if key not in targets]
        if missing:
            raise ValueError(
                f"the predictions carry attention maps {keys} but the targets have no "
                f"{', '.join(missing)}: CornerNet-Saccade trains on the targets of the saccade "
                "sampling (cornernet_tf.data.saccade)"
            )
        terms["attention"] = attention_loss(
            [preds[key] for key in keys], [targets[key] for key in keys]
        )
    return terms


def cornernet_loss(
    predictions,
    targets,
    *,
    pull_weight: float = 0.1,
    push_weight: float = 0.1,
    offset_weight: float = 1.0,
    per_stack: bool = False,
) -> dict[str, tf.Tensor]:
    """The official AELoss (CornerNet_Saccade_Loss when the predictions carry attention maps).

    Returns float32 scalars focal, pull, push, offset, total, and attention with attention maps.
    focal and offset are summed over tl, br and the stacks; pull and push are summed over the
    stacks and already weighted; offset is weighted by offset_weight (1 in the official code);
    attention is summed over the maps and averaged over the stacks;
    total = (focal [+ attention] + pull + push + offset) / num_stacks. With per_stack=True the
    dict also holds the unweighted per-stack terms of `loss_terms` as focal_per_stack (S,2),
    pull_per_stack (S,), push_per_stack (S,), offset_per_stack (S,2) [and attention_per_stack
    (S,M)].
    """
    terms = loss_terms(predictions, targets)
    num_stacks = tf.cast(tf.shape(terms["pull"])[0], tf.float32)
    focal = tf.reduce_sum(terms["focal"])
    pull = pull_weight * tf.reduce_sum(terms["pull"])
    push = push_weight * tf.reduce_sum(terms["push"])
    offset = offset_weight * tf.reduce_sum(terms["offset"])
    out = {"focal": focal, "pull": pull, "push": push, "offset": offset}
    summed = focal
    if "attention" in terms:
        out["attention"] = tf.reduce_sum(terms["attention"]) / num_stacks
        summed = summed + out["attention"]
    out["total"] = (summed + pull + push + offset) / num_stacks
    if per_stack:
        out.update({f"{key}_per_stack": value for key, value in terms.items()})
    return out
