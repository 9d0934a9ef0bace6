"""TFRecords of tf.train.Example with the usual object-detection keys, checked before training
and read with the shards interleaved."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from cornernet_tf.data.source import DataError, Source, decode_image, is_image, undecodable
from cornernet_tf.files import reason

TFRECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}
# what the start-up check reads of each record (the image is not decoded)
_CHECKED = {
    **TFRECORD_FEATURES,
    "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
}
SHUFFLE_RECORDS = 2048  # records a training shuffle holds (they carry the encoded images)
CYCLE = 8  # shards read at once


def tfrecord_source(pattern: str, category_ids, progress: bool = False) -> Source:
    """TFRecords of tf.train.Example: image/encoded, image/object/bbox/{xmin,ymin,xmax,ymax}
    normalised to [0, 1], image/object/class/label the dataset's category ids (the TF Object
    Detection API writes COCO's 1..90), mapped to class indices by `category_ids` (ascending).

    Every record is checked first (`check_tfrecords`): labels outside the map and duplicate
    image/source_id values are errors; records whose image/encoded is not an image or does not
    decode are left out; a shard that is truncated or corrupt is read up to where it breaks;
    boxes of zero area or outside [0, 1] are dropped; each with a warning. `source.usable`
    counts in bytes (a broken tail has no record count). Shards are read `CYCLE` at a time,
    interleaved record by record in a fixed order. `progress`: a progress bar while checking."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"{pattern}: no TFRecord file matches")
    check = check_tfrecords(files, category_ids, progress)
    ids = tf.constant(list(category_ids), tf.int64)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(ids, tf.range(len(category_ids), dtype=tf.int32)), -1
    )
    skip = tf.constant(sorted(check.skipped) or [(-1, -1)], tf.int64)
    readable = tf.constant(check.readable, tf.int64)

    def numbered(index, file):  # never reads past where a broken shard ends
        records = tf.data.TFRecordDataset(file).take(tf.gather(readable, index))
        return records.enumerate().map(lambda k, r: (index, k, r))

    def usable(index, k, record):
        return ~tf.reduce_any(tf.reduce_all(tf.equal(skip, tf.stack([index, k])), axis=1))

    files_ds = tf.data.Dataset.from_tensor_slices((tf.range(len(files), dtype=tf.int64), files))
    items = files_ds.interleave(
        numbered,
        cycle_length=min(CYCLE, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    items = items.filter(usable).map(lambda index, k, record: record)

    def load(record):
        ex = tf.io.parse_single_example(record, TFRECORD_FEATURES)
        image = decode_image(ex["image/encoded"])
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        coords = [
            tf.sparse.to_dense(ex[f"image/object/bbox/{k}"])
            for k in ("xmin", "ymin", "xmax", "ymax")
        ]
        boxes = tf.stack(coords, axis=-1)
        classes = table.lookup(tf.sparse.to_dense(ex["image/object/class/label"]))
        keep = usable_boxes(boxes)
        boxes = boxes * tf.stack([shape[1], shape[0], shape[1], shape[0]])
        return {
            "image": image,
            "boxes": tf.boolean_mask(boxes, keep),
            "classes": tf.boolean_mask(classes, keep),
        }

    return Source(
        items,
        load,
        check.usable,
        check.warnings,
        check.summary,
        shuffle_buffer=min(check.usable, SHUFFLE_RECORDS),
        usable=(check.usable_bytes, check.total_bytes, "bytes"),
        decoded=True,
    )


def usable_boxes(boxes):
    """Which normalised [xmin, ymin, xmax, ymax] boxes have an area and overlap the image: the
    rule of the start-up check (NumPy) and of the loader (TensorFlow) alike."""
    xmin, ymin, xmax, ymax = (boxes[:, i] for i in range(4))
    return (xmax > xmin) & (ymax > ymin) & (xmin < 1) & (ymin < 1) & (xmax > 0) & (ymax > 0)


@dataclasses.dataclass
class TfrecordCheck:
    """What `check_tfrecords` found: usable records, skipped {(file index, record index)},
    readable records per file (up to where a broken shard ends), boxes kept and dropped, bytes
    of the usable records and of all files, warnings, summary."""

    usable: int = 0
    skipped: set = dataclasses.field(default_factory=set)
    readable: list = dataclasses.field(default_factory=list)
    boxes: int = 0
    dropped: int = 0
    usable_bytes: int = 0
    total_bytes: int = 0
    broken: int = 0
    warnings: list = dataclasses.field(default_factory=list)
    summary: str = ""


def check_tfrecords(files, category_ids, progress: bool = False) -> TfrecordCheck:
    """Reads every record's labels, boxes, source id and first image bytes, and decodes every
    image once: raises DataError naming the file, the record, the field and the value for a label
    outside the map or a duplicate image/source_id. Records whose image is not an image or does
    not decode are left out, and a shard that is truncated or corrupt is read up to the last
    whole record, each with a warning; DataError (with the warnings) when no record is usable.
    `progress`: a progress bar over the files' bytes on stderr."""
    from tqdm import tqdm

    allowed = {int(c) for c in category_ids}
    check, seen = TfrecordCheck(), {}
    sizes = [tf.io.gfile.stat(file).length for file in files]
    bar = {"desc": "checking every record", "unit": "B", "unit_scale": True, "leave": False}
    with tqdm(total=sum(sizes), disable=not progress, **bar) as progress_bar:
        for f, (file, size) in enumerate(zip(files, sizes, strict=True)):
            _check_file(check, f, file, size, allowed, seen)
            progress_bar.update(size)
    read = sum(check.readable)
    check.summary = (
        f"{len(files)} TFRecord file(s): {check.usable:,} images, {check.boxes:,} boxes, "
        f"{len(allowed)} categories; left out {len(check.skipped):,} records (not an image or "
        f"does not decode; {read:,} read), {check.dropped:,} boxes"
        + (f"; {check.broken} file(s) truncated or corrupt" if check.broken else "")
    )
    if not check.usable:
        raise DataError(
            f"{files[0]}{'...' if len(files) > 1 else ''}: no usable record in {len(files)} "
            f"file(s) ({check.summary}): "
            + (check.warnings[0] if check.warnings else "the files hold no record"),
            check.warnings,
        )
    return check


def _check_file(check: TfrecordCheck, f: int, file: str, size: int, allowed, seen: dict) -> None:
    """`check_tfrecords` for the file `file` (index `f`, `size` bytes): adds to `check`."""
    check.total_bytes += size
    reader = _Records(file)
    usable = {}  # record index -> its bytes on disk
    for k, record in enumerate(reader):
        where = f"{file}: record {k}"
        if record["source_id"]:
            where += f" (image/source_id {record['source_id']!r})"
        bad = [v for v in record["labels"] if v not in allowed]
        if bad:
            raise DataError(
                f"{where}: image/object/class/label {bad[0]} is not in the category map "
                f"{sorted(allowed)} (set data.category_ids to the dataset's ids)"
            )
        if record["source_id"] in seen:
            raise DataError(
                f"{where}: duplicate image/source_id {record['source_id']!r}, "
                f"also {seen[record['source_id']]}"
            )
        if record["source_id"]:
            seen[record["source_id"]] = f"{file}: record {k}"
        if not is_image(record["head"]):
            check.skipped.add((f, k))
            check.warnings.append(f"{where} left out: image/encoded is not an image")
            continue
        keep = usable_boxes(record["boxes"])
        for n in np.flatnonzero(~keep):
            check.warnings.append(
                f"{where}: box {n} left out: {record['boxes'][n].tolist()} (xmin, ymin, "
                "xmax, ymax) has no area or lies outside the image"
            )
        check.boxes += int(keep.sum())
        check.dropped += int((~keep).sum())
        usable[k] = record["bytes"]
    check.readable.append(reader.count)
    if reader.end < size:
        check.broken += 1
        why = f" ({reader.error})" if "corrupt" in reader.error else ""
        check.warnings.append(
            f"{file}: truncated or corrupt after {reader.count} records (at byte "
            f"{reader.end} of {size}){why}: the rest, {size - reader.end} bytes, left out"
        )
    for k in _undecodable(file, reader.count, sorted(usable)):
        check.skipped.add((f, k))
        check.warnings.append(
            f"{file}: record {k} left out: image/encoded does not decode (truncated or "
            "corrupt image)"
        )
        del usable[k]
    check.usable += len(usable)
    check.usable_bytes += sum(usable.values())


def _undecodable(file, count: int, positions) -> list[int]:
    """Which of the records at `positions` (of the first `count` of `file`) do not decode."""
    if not positions:
        return []

    def load(record):
        ex = tf.io.parse_single_example(record, {"image/encoded": _CHECKED["image/encoded"]})
        return {"image": decode_image(ex["image/encoded"])}

    failed = undecodable(tf.data.TFRecordDataset(file).take(count), load, count)
    return sorted(set(failed) & set(positions))


class _Records:
    """The records of one file, parsed 256 at a time: labels, boxes (N, 4) normalised,
    source_id (str, "" when absent), the first 16 bytes of image/encoded and the record's bytes
    on disk. After the loop: count (records read), end (the byte after the last whole record)
    and error (why reading stopped early, "" at the end of the file or a truncated tail)."""

    def __init__(self, file):
        self.file, self.count, self.end, self.error = file, 0, 0, ""

    def __iter__(self):
        dataset = tf.data.TFRecordDataset(self.file)
        batches = iter(dataset.batch(256))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except tf.errors.OpError:  # corrupt: read the records of this batch one by one
                batch = []
                try:
                    for record in dataset.skip(self.count).take(256):
                        batch.append(record)
                except tf.errors.OpError as error:
                    self.error = reason(error)
                batch = tf.stack(batch) if batch else None
                if batch is not None:
                    yield from self._parsed(batch)
                return
            yield from self._parsed(batch)

    def _parsed(self, batch):
        try:
            parsed = tf.io.parse_example(batch, _CHECKED)
        except tf.errors.OpError as error:
            raise DataError(
                f"{self.file}: records {self.count} to {self.count + len(batch) - 1}: not "
                f"tf.train.Example records with the detection keys ({reason(error)})"
            ) from None
        heads = tf.strings.substr(parsed["image/encoded"], 0, 16).numpy()
        lengths = tf.strings.length(batch).numpy()
        labels = tf.RaggedTensor.from_sparse(parsed["image/object/class/label"]).to_list()
        coords = [
            tf.RaggedTensor.from_sparse(parsed[f"image/object/bbox/{c}"]).to_list()
            for c in ("xmin", "ymin", "xmax", "ymax")
        ]
        for j, source_id in enumerate(parsed["image/source_id"].numpy()):
            self.count += 1
            self.end += int(lengths[j]) + 16  # length, its CRC, the data, its CRC
            yield {
                "labels": labels[j],
                "boxes": np.array([c[j] for c in coords], np.float32).T.reshape(-1, 4),
                "source_id": source_id.decode(),
                "head": heads[j],
                "bytes": int(lengths[j]) + 16,
            }
