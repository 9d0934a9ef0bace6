// Two kernels of TF.js 4.22's WASM backend fail on empty tensors, which the exported graph makes
// whenever an image has no detection: TopK traps ("RuntimeError: divide by zero") and GatherV2
// from an empty tensor returns its internal 4-D shape. fixWasmKernels(tf) wraps both to answer
// empty inputs themselves, with the shapes TensorFlow gives; other inputs go to the original
// kernels. A plain script for the page (window.fixWasmKernels) and a CommonJS module for Node.
(function define(root, fixWasmKernels) {
  if (typeof module === 'object' && module.exports) module.exports = fixWasmKernels;
  else root.fixWasmKernels = fixWasmKernels;
}(this, (tf) => {
  const isEmpty = (shape) => shape.some((size) => size === 0);
  const outputShape = {
    TopK: ({ inputs: { x }, attrs: { k } }) => (isEmpty(x.shape) ? [[...x.shape.slice(0, -1), k], [x.dtype, 'int32']] : null),
    GatherV2: ({ inputs: { x, indices }, attrs: { axis, batchDims } }) => {
      if (!isEmpty(x.shape) && !isEmpty(indices.shape)) return null;
      const parsed = tf.util.parseAxisParam(axis, x.shape)[0];
      const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(x, indices, parsed, batchDims);
      return [info.outputShape, [x.dtype]];
    },
  };
  for (const [name, empty] of Object.entries(outputShape)) {
    const original = tf.getKernel(name, 'wasm');
    if (original && !original.handlesEmpty) {
      tf.unregisterKernel(name, 'wasm');
      tf.registerKernel({
        ...original,
        handlesEmpty: true,
        kernelFunc: (args) => {
          const answer = empty(args);
          if (!answer) return original.kernelFunc(args);
          const [shape, dtypes] = answer;
          const outputs = dtypes.map((dtype) => args.backend.makeOutput(shape, dtype));
          return outputs.length === 1 ? outputs[0] : outputs;
        },
      });
    }
  }
}));
