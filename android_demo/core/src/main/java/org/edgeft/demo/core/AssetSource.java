package org.edgeft.demo.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;

/**
 * Where the bundle's files come from: the APK's assets on a phone, a folder in tests.
 *
 * <p>An interface so that {@link ModelBundle} needs no {@code android.content.res.AssetManager}: the
 * Activity passes {@code name -> assets.open("bundle/" + name)}.
 */
public interface AssetSource {
    /** Opens {@code name} (a path relative to the bundle folder); throws if it does not exist. */
    InputStream open(String name) throws IOException;

    /** All bytes of {@code name}. */
    default byte[] read(String name) throws IOException {
        try (InputStream in = open(name)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buffer = new byte[1 << 16];
            for (int n; (n = in.read(buffer)) > 0; ) {
                out.write(buffer, 0, n);
            }
            return out.toByteArray();
        }
    }

    /** A bundle folder on disk (tests, or a bundle downloaded into the app's files). */
    static AssetSource folder(File dir) {
        return name -> new FileInputStream(new File(dir, name));
    }
}
