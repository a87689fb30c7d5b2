/**
 * The simulator's recordings: a WAV file (PCM, 8 kHz, 16-bit, mono — telephone quality) of a
 * 440 Hz tone as long as the recording. Real providers return the call's audio instead.
 */
const SAMPLE_RATE = 8_000;
const HEADER_BYTES = 44;

export function toneWav(durationMs: number): Buffer {
  const samples = Math.max(0, Math.round((durationMs / 1000) * SAMPLE_RATE));
  const wav = Buffer.alloc(HEADER_BYTES + samples * 2);
  wav.write('RIFF', 0, 'ascii');
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVE', 8, 'ascii');
  wav.write('fmt ', 12, 'ascii');
  wav.writeUInt32LE(16, 16); // PCM format chunk size
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(SAMPLE_RATE, 24);
  wav.writeUInt32LE(SAMPLE_RATE * 2, 28); // bytes per second
  wav.writeUInt16LE(2, 32); // bytes per frame
  wav.writeUInt16LE(16, 34); // bits per sample
  wav.write('data', 36, 'ascii');
  wav.writeUInt32LE(samples * 2, 40);
  for (let index = 0; index < samples; index += 1) {
    wav.writeInt16LE(Math.round(8_000 * Math.sin((2 * Math.PI * 440 * index) / SAMPLE_RATE)), HEADER_BYTES + index * 2);
  }
  return wav;
}
