package org.edgeft.demo.core;

import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * stdin: one JSON string per line; stdout: the same texts through {@link TextNormalizer}, one JSON
 * string per line. Arguments: cleanText stripAccents lowercase splitPunctuation clipChars. Lets the
 * Python tests compare Java's normalization with {@code app_text} on the tokenizer test sentences.
 */
public final class NormalizeLines {
    private NormalizeLines() {
    }

    public static void main(String[] args) throws IOException, JSONException {
        Normalization n = new Normalization(Boolean.parseBoolean(args[0]), Boolean.parseBoolean(args[1]),
                Boolean.parseBoolean(args[2]), Boolean.parseBoolean(args[3]), Integer.parseInt(args[4]));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, "UTF-8");
        for (String line; (line = in.readLine()) != null; ) {
            out.println(JSONObject.quote(TextNormalizer.normalize(new JSONArray("[" + line + "]").getString(0), n)));
        }
        out.flush();
    }
}
