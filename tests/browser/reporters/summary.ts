import type { FullResult, Reporter, TestCase, TestResult } from '@playwright/test/reporter';

/// The suite's closing line, "N passed, N failed", as the Gherkin runner's:
/// scripts/test adds it to the total. Printed on exit, after the list
/// reporter's own summary, so that it is the last line.
export default class Summary implements Reporter {
  private passed = 0;
  private failed = 0;

  onTestEnd(_test: TestCase, result: TestResult) {
    if (result.status === 'passed') this.passed += 1;
    else if (result.status !== 'skipped') this.failed += 1;
  }

  onEnd(result: FullResult) {
    // A run that fails before any test (a config error) still counts as a failure.
    if (result.status !== 'passed' && this.failed === 0) this.failed = 1;
  }

  async onExit() {
    console.log(`${this.passed} passed, ${this.failed} failed`);
  }

  printsToStdio() {
    return false;
  }
}
