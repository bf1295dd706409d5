// String well-formedness methods: in Node 20 (V8 11.3) but typed only in lib es2024,
// which would also admit APIs Node 20 lacks.
interface String {
  isWellFormed(): boolean;
  toWellFormed(): string;
}
