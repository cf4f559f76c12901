/**
 * A text progress bar for factory batches: one line redrawn with '\r', at most
 * once per percent, finished with a newline. It only ever shows counts.
 */
export class ProgressBar {
  readonly #write: (text: string) => void;
  readonly #total: number;
  readonly #label: string;
  readonly #width: number;
  #lastPercent = -1;
  #done = false;

  constructor(write: (text: string) => void, total: number, label: string, width = 30) {
    this.#write = write;
    this.#total = Math.max(0, total);
    this.#label = label;
    this.#width = width;
  }

  render(current: number): string {
    const c = Math.min(Math.max(0, current), this.#total);
    const frac = this.#total === 0 ? 1 : c / this.#total;
    const filled = Math.round(frac * this.#width);
    const pct = String(Math.floor(frac * 100)).padStart(3);
    return `[${'#'.repeat(filled)}${'.'.repeat(this.#width - filled)}] ${pct}% ${String(c).padStart(String(this.#total).length)}/${this.#total} ${this.#label}`;
  }

  update(current: number): void {
    if (this.#done) return;
    const pct =
      this.#total === 0 ? 100 : Math.floor((Math.min(current, this.#total) / this.#total) * 100);
    if (pct === this.#lastPercent) return;
    this.#lastPercent = pct;
    this.#write(`\r${this.render(current)}`);
  }

  finish(): void {
    if (this.#done) return;
    this.update(this.#total);
    this.#done = true;
    this.#write('\n');
  }
}
