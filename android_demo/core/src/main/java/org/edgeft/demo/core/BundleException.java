package org.edgeft.demo.core;

/** A bundle the app cannot use: missing, tampered with, of a newer format, or not a text classifier. */
public final class BundleException extends Exception {
    private static final long serialVersionUID = 1L;

    public BundleException(String message) {
        super(message);
    }
}
