// The app's logic as a plain Java library: no android.* imports, so it is unit-tested on any JVM
// (`./gradlew :core:test` here; tests/test_android_core.py with javac + JUnit 4 in edgeft's CI).
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

tasks.withType<JavaCompile>().configureEach {
    options.encoding = "UTF-8"
}

dependencies {
    // org.json is part of the Android platform; the JVM needs a copy to compile and test against.
    compileOnly("org.json:json:20240303")
    testImplementation("org.json:json:20240303")
    testImplementation("junit:junit:4.13.2")
}
