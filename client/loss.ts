import * as tf from '@tensorflow/tfjs';

/**
 * Added to the logits of classes a client lacks instead of log 0: exp of anything this far below the
 * largest logit is exactly 0 in float32 and float16, so those classes leave the softmax, and their logits
 * get exactly zero gradient (Adam included), not a round-off residue.
 */
export const ABSENT_LOG_PRIOR = -1e4;

/**
 * log pi for logitAdjustedCrossentropy: pi_c the share of class c in `labels` (integers in
 * 0..numClasses-1), ABSENT_LOG_PRIOR for the classes not held.
 */
export function logLabelPrior(labels: ArrayLike<number>, numClasses: number): Float32Array {
  const counts = new Float64Array(numClasses);
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    if (!Number.isInteger(c) || c < 0 || c >= numClasses)
      throw new Error(`label ${c} is outside 0..${numClasses - 1}`);
    counts[c]++;
  }
  return Float32Array.from(counts, (k) => (k > 0 ? Math.log(k / labels.length) : ABSENT_LOG_PRIOR));
}

/**
 * Mean cross-entropy of softmax(z + log pi) over a batch: the logit-adjusted loss (Menon et al. 2021,
 * tau = 1) with pi the client's own label frequencies. Classes the client lacks drop out of the softmax
 * (as in FedRS, Li & Zhan 2021, with alpha = 0): the client no longer teaches the model to push down
 * classes it never sees. With pi uniform it is plain cross-entropy. `y` is one-hot [batch, classes], `z`
 * the pre-softmax logits (shared/model/logits.ts), `logPrior` from logLabelPrior of the same labels.
 */
export function logitAdjustedCrossentropy(y: tf.Tensor, z: tf.Tensor, logPrior: tf.Tensor1D): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(tf.add(z, logPrior))), -1))) as tf.Scalar;
}
