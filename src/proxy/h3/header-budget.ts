/**
 * The bytes one connection may hold for request streams whose HEADERS are not complete yet
 * (`http.max_connection_header_bytes`). Each such stream takes what it reads before its HEADERS
 * complete and gives it back once they do or the stream ends; a stream that would go beyond the
 * budget is refused, so a client opening many streams of half-sent headers holds a bounded amount.
 */
export class HeaderBudget {
  #used = 0;

  constructor(readonly limit: number) {}

  get used(): number {
    return this.#used;
  }

  get available(): number {
    return this.limit - this.#used;
  }

  /** Takes `bytes` if they fit; false (and nothing taken) if they do not. */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#used -= bytes;
  }
}
