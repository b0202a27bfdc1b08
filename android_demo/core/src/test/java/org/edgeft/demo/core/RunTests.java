package org.edgeft.demo.core;

import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.notification.Failure;

/**
 * Runs the JUnit classes named on the command line and ends with one plain line that CI reads:
 * {@code N passed, N failed, N skipped}. Exit status 0 only when nothing failed.
 */
public final class RunTests {
    private RunTests() {
    }

    public static void main(String[] args) throws ClassNotFoundException {
        Class<?>[] classes = new Class<?>[args.length];
        for (int i = 0; i < args.length; i++) {
            classes[i] = Class.forName(args[i]);
        }
        Result result = new JUnitCore().run(classes);
        for (Failure f : result.getFailures()) {
            System.out.println("FAILED " + f.getTestHeader() + ": " + f.getMessage());
            String[] trace = f.getTrace().split("\n");
            for (int i = 1; i < Math.min(trace.length, 8); i++) {
                System.out.println("    " + trace[i].trim());
            }
        }
        int failed = result.getFailureCount();
        int skipped = result.getAssumptionFailureCount() + result.getIgnoreCount();
        int passed = result.getRunCount() - failed - result.getAssumptionFailureCount();
        System.out.printf("ran %d tests in %.2f s%n", result.getRunCount(), result.getRunTime() / 1000.0);
        System.out.println(passed + " passed, " + failed + " failed, " + skipped + " skipped");
        System.exit(failed == 0 ? 0 : 1);
    }
}
