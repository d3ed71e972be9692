/** Bytes from hex text; white space is ignored so vectors can be typed in groups as the RFCs print them. */
export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
