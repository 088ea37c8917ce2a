// Taking base64 attachment parts out of a message for Graph's upload sessions: what is left is the
// MTA's bytes with exactly those parts cut, each file is its part decoded.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { takeAttachments } from '../../src/upstream/api/mime-attachments.js';
import { multipartMessage } from '../helpers/api-stack.js';

const KB = 1024;
const parts = [
  { type: 'application/pdf', filename: 'big.pdf', bytes: randomBytes(300 * KB) },
  { type: 'image/png', filename: 'logo.png', contentId: 'logo@x', bytes: randomBytes(200 * KB) },
  { type: 'text/csv', filename: 'small.csv', bytes: randomBytes(20 * KB) },
];
const msg = multipartMessage('a@example.com', ['b@example.net'], 'split', parts);
const mime = Buffer.from(msg.raw, 'latin1');

describe('takeAttachments', () => {
  it('takes the largest parts until the rest fits, leaving every other byte as it was', () => {
    const split = takeAttachments(mime, mime.length - 300 * KB, { min: 100 * KB, max: 1024 * KB })!;
    expect(split.rest.toString('latin1')).toBe(msg.without(0));
    expect(split.files.map((f) => [f.name, f.contentType, f.isInline, f.contentId])).toEqual([['big.pdf', 'application/pdf', false, undefined]]);
    expect(split.files[0]!.bytes.equals(parts[0]!.bytes)).toBe(true);

    const two = takeAttachments(mime, mime.length - 500 * KB, { min: 100 * KB, max: 1024 * KB })!;
    expect(two.rest.toString('latin1')).toBe(msg.without(0, 1));
    expect(two.files.map((f) => [f.name, f.contentType, f.isInline, f.contentId])).toEqual([
      ['big.pdf', 'application/pdf', false, undefined],
      ['logo.png', 'image/png', true, 'logo@x'],
    ]);
    expect(two.files[1]!.bytes.equals(parts[1]!.bytes)).toBe(true);
  });

  it('leaves files outside the upload range in the message, and gives up when the rest cannot fit', () => {
    // The small part is under the minimum: only the two large ones may go, and they are not enough.
    expect(takeAttachments(mime, 20 * KB, { min: 100 * KB, max: 1024 * KB })).toBeNull();
    // The largest is over the maximum: the next one goes instead.
    const split = takeAttachments(mime, mime.length - 200 * KB, { min: 100 * KB, max: 250 * KB })!;
    expect(split.rest.toString('latin1')).toBe(msg.without(1));
  });

  it('takes nothing from a message that is not multipart, or from parts that are not base64', () => {
    const plain = Buffer.from('From: <a@example.com>\r\nSubject: x\r\n\r\n' + 'y'.repeat(5000) + '\r\n');
    expect(takeAttachments(plain, 1000, { min: 1, max: 1e9 })).toBeNull();
    const qp = Buffer.from(msg.raw.replace(/Content-Transfer-Encoding: base64/g, 'Content-Transfer-Encoding: quoted-printable'), 'latin1');
    expect(takeAttachments(qp, mime.length - 300 * KB, { min: 100 * KB, max: 1024 * KB })).toBeNull();
  });

  it('reads a folded Content-Type and an unquoted boundary', () => {
    const folded = Buffer.from(msg.raw.replace(/Content-Type: multipart\/mixed; boundary="([^"]+)"/, 'Content-Type: multipart/mixed;\r\n\tboundary=$1'), 'latin1');
    const split = takeAttachments(folded, folded.length - 300 * KB, { min: 100 * KB, max: 1024 * KB })!;
    expect(split.files.map((f) => f.name)).toEqual(['big.pdf']);
    expect(split.rest.length).toBe(folded.length - (mime.length - Buffer.byteLength(msg.without(0), 'latin1')));
  });

  it('follows nested multiparts, and leaves each one at least one part', () => {
    const image = randomBytes(150 * KB);
    const b64 = image.toString('base64').replace(/.{76}(?=.)/g, '$&\r\n');
    const imagePart = `\r\n--rel\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <img1>\r\n\r\n${b64}`;
    const related = (withHtml: boolean) =>
      `\r\n--mix\r\nContent-Type: multipart/related; boundary=rel\r\n\r\n` +
      (withHtml ? `--rel\r\nContent-Type: text/html\r\n\r\n<img src="cid:img1">` : '--rel\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <img0>\r\n\r\nAAAA') +
      imagePart +
      `\r\n--rel--\r\n`;
    const build = (withHtml: boolean, keepImage: boolean) => {
      const rel = related(withHtml);
      return Buffer.from(
        'From: <a@example.com>\r\nContent-Type: multipart/mixed; boundary="mix"\r\n\r\n--mix\r\nContent-Type: text/plain\r\n\r\nhello' +
          (keepImage ? rel : rel.replace(imagePart, '')) +
          '\r\n--mix--\r\n',
        'latin1',
      );
    };
    const mime = build(true, true);
    const split = takeAttachments(mime, mime.length - 150 * KB, { min: 100 * KB, max: 1024 * KB })!;
    expect(split.rest.equals(build(true, false))).toBe(true);
    expect(split.files.map((f) => [f.name, f.contentType, f.isInline, f.contentId])).toEqual([['img1', 'image/png', true, 'img1']]);
    expect(split.files[0]!.bytes.equals(image)).toBe(true);
    // The related part holds two images only: the large one may go, the small one stays.
    const two = build(false, true);
    expect(takeAttachments(two, two.length - 150 * KB, { min: 100 * KB, max: 1024 * KB })!.rest.equals(build(false, false))).toBe(true);
    expect(takeAttachments(two, 100, { min: 1, max: 1024 * KB })).toBeNull();
  });
});
