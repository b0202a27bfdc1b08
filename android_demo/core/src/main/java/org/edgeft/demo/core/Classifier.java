package org.edgeft.demo.core;

import java.util.function.LongSupplier;

/**
 * Text in, {@link Prediction} out: normalize, run the model, softmax, map to the label, time it.
 *
 * <p>Not thread-safe by contract (the Activity calls it from one background thread); ONNX Runtime
 * sessions themselves may be shared.
 */
public final class Classifier implements AutoCloseable {
    private final ModelBundle bundle;
    private final TextModel model;
    private final LongSupplier clock; // nanoseconds; System::nanoTime on the phone, a fake in tests

    public Classifier(ModelBundle bundle, TextModel model, LongSupplier clock) {
        this.bundle = bundle;
        this.model = model;
        this.clock = clock;
    }

    public Classifier(ModelBundle bundle, TextModel model) {
        this(bundle, model, System::nanoTime);
    }

    public Prediction classify(String text) throws Exception {
        long start = clock.getAsLong();
        TextModel.Output out = model.run(TextNormalizer.normalize(text, bundle.normalization));
        double ms = (clock.getAsLong() - start) / 1e6;
        if (out.logits.length != bundle.labels.size()) {
            throw new BundleException("the model returned " + out.logits.length + " logits but "
                    + ModelBundle.MANIFEST + " lists " + bundle.labels.size()
                    + " labels; the manifest does not belong to this model");
        }
        double[] probs = Scores.softmax(out.logits);
        int best = Scores.argmax(probs);
        return new Prediction(bundle.labels.get(best), probs[best], probs, out.tokens,
                out.tokens >= bundle.maxLength, ms);
    }

    /**
     * Latency of {@code runs} classifications of {@code text} after {@code warmup} untimed ones
     * (the first calls pay for memory allocation and caches).
     */
    public LatencyStats benchmark(String text, int runs, int warmup) throws Exception {
        if (runs < 1) {
            throw new IllegalArgumentException("runs must be at least 1, not " + runs);
        }
        for (int i = 0; i < warmup; i++) {
            classify(text);
        }
        double[] ms = new double[runs];
        for (int i = 0; i < runs; i++) {
            ms[i] = classify(text).latencyMs;
        }
        return new LatencyStats(ms);
    }

    @Override
    public void close() {
        model.close();
    }
}
