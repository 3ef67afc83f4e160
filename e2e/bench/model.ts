import * as tf from '@tensorflow/tfjs';

/**
 * What a user of the trained model does in a browser: tf.loadLayersModel(url) and predict. The Playwright
 * driver (e2e/guest.test.ts) calls window.__loadModel and compares with the server's raw weights.
 */
async function loadModel(url: string): Promise<{ weights: number[]; prediction: number[] }> {
  await tf.setBackend('cpu');
  const model = await tf.loadLayersModel(url);
  const parts = await Promise.all(model.getWeights().map((w) => w.data()));
  const weights = parts.flatMap((p) => Array.from(p));
  const x = tf.fill([1, 32, 32, 3], 0.5);
  const prediction = Array.from(await (model.predict(x) as tf.Tensor).data());
  tf.dispose([x]);
  model.dispose();
  return { weights, prediction };
}
(window as unknown as { __loadModel: typeof loadModel }).__loadModel = loadModel;
