package org.edgeft.demo.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/** A small hand-made bundle folder for the tests: a fake text model, labels, a manifest with hashes. */
final class TestBundles {
    private TestBundles() {
    }

    static void write(File dir, String name, byte[] data) throws IOException {
        try (OutputStream out = new FileOutputStream(new File(dir, name))) {
            out.write(data);
        }
    }

    static JSONObject digest(byte[] data) throws JSONException {
        return new JSONObject().put("sha256", ModelBundle.sha256(data)).put("size", data.length);
    }

    /** Writes text_model.onnx, labels.txt and edgeft.json (negative/positive, max_length 64); returns the manifest. */
    static JSONObject writeBundle(File dir) throws IOException, JSONException {
        byte[] model = "not really a model".getBytes(StandardCharsets.UTF_8);
        byte[] labels = "negative\npositive\n".getBytes(StandardCharsets.UTF_8);
        write(dir, "text_model.onnx", model);
        write(dir, "labels.txt", labels);
        JSONObject normalization = new JSONObject().put("clean_text", true).put("strip_accents", true)
                .put("lowercase", true).put("split_punctuation", true).put("clip_chars", 2048);
        JSONObject manifest = new JSONObject()
                .put("format_version", 1)
                .put("task", "text-classification")
                .put("labels", new JSONArray().put("negative").put("positive"))
                .put("max_length", 64)
                .put("target", new JSONObject().put("name", "android-arm64").put("threads", 2))
                .put("files", new JSONObject().put("text_model.onnx", digest(model)).put("labels.txt", digest(labels)))
                .put("android", new JSONObject().put("text_model", "text_model.onnx").put("text_input", "text")
                        .put("logits", "logits").put("token_ids", "token_ids").put("labels_file", "labels.txt")
                        .put("normalization", normalization));
        saveManifest(dir, manifest);
        return manifest;
    }

    static void saveManifest(File dir, JSONObject manifest) throws IOException {
        write(dir, ModelBundle.MANIFEST, manifest.toString().getBytes(StandardCharsets.UTF_8));
    }
}
