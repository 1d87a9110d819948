import type { FullResult, Reporter, TestCase } from '@playwright/test/reporter';

/// The suite's closing line, "N passed, N failed", as the Gherkin runner's:
/// scripts/test adds it to the total. Printed on exit, after the list
/// reporter's own summary, so that it is the last line. A test that passed
/// only on its retry counts as passed, and is named above the line as
/// flaky, so that a flake is seen rather than hidden.
export default class Summary implements Reporter {
  private tests = new Map<string, TestCase>();
  private runFailed = false;

  onTestEnd(test: TestCase) {
    this.tests.set(test.id, test);
  }

  onEnd(result: FullResult) {
    this.runFailed = result.status !== 'passed';
  }

  async onExit() {
    let passed = 0;
    let failed = 0;
    for (const test of this.tests.values()) {
      const outcome = test.outcome();
      if (outcome === 'expected') passed += 1;
      else if (outcome === 'flaky') {
        passed += 1;
        console.log(`flaky (passed on retry): ${test.titlePath().filter(Boolean).join(' › ')}`);
      } else if (outcome === 'unexpected') {
        failed += 1;
        console.log(`failed: ${test.titlePath().filter(Boolean).join(' › ')}`);
      }
    }
    // A run that fails before any test (a config error) still counts as a failure.
    if (this.runFailed && failed === 0) failed = 1;
    console.log(`${passed} passed, ${failed} failed`);
  }

  printsToStdio() {
    return false;
  }
}
