// AudioWorklet: microphone -> 16 kHz mono PCM16, posted to the main thread in ~100 ms blocks.
// Downsampling averages the input samples that fall into each output sample (a box filter, enough
// against aliasing for speech-band scores) with a fractional step, so any context rate works.
class PcmDownsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.target = o.targetRate || 16000;
    this.block = Math.round(this.target * (o.blockSeconds || 0.1));
    this.step = sampleRate / this.target; // input samples per output sample (>= 1)
    this.out = new Int16Array(this.block);
    this.n = 0;
    this.acc = 0; this.cnt = 0; this.pos = 0; // fractional position inside the current output sample
  }

  push(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.n === this.block) {
      this.port.postMessage(this.out.buffer, [this.out.buffer]);
      this.out = new Int16Array(this.block);
      this.n = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    const nch = input.length;
    for (let i = 0; i < ch.length; i++) {
      let v = ch[i];
      if (nch > 1) { for (let c = 1; c < nch; c++) v += input[c][i]; v /= nch; }
      if (this.step <= 1.0001) { this.push(v); continue; }
      this.acc += v; this.cnt++; this.pos += 1;
      if (this.pos >= this.step) {
        this.push(this.acc / this.cnt);
        this.acc = 0; this.cnt = 0; this.pos -= this.step;
      }
    }
    return true;
  }
}
registerProcessor('pcm-downsampler', PcmDownsampler);
