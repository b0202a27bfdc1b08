package org.edgeft.demo.core;

/**
 * The model call, behind an interface: ONNX Runtime on the phone (the app's OrtTextModel), a fake in
 * the JVM tests (ONNX Runtime's Java API cannot load on this JVM: no desktop JNI library is packaged
 * where the tests run).
 */
public interface TextModel extends AutoCloseable {
    /** Runs the string-in model on one normalized text. */
    Output run(String normalizedText) throws Exception;

    /** Frees the native session; no checked exception, so try-with-resources stays simple. */
    @Override
    void close();

    /** What the text model returns: edgeft.json {@code android.logits} and {@code android.token_ids}. */
    final class Output {
        public final float[] logits; // (labels,)
        public final int tokens;     // length of token_ids

        public Output(float[] logits, int tokens) {
            this.logits = logits;
            this.tokens = tokens;
        }
    }
}
