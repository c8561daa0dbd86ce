// A single confirmation dialog rendered by <ConfirmHost/>; `confirm()` resolves true/false.
import { writable } from 'svelte/store';

export interface ConfirmReq {
  title: string;
  body?: string;
  confirmLabel?: string;
  danger?: boolean;
  /** User must type this text to enable the button (destructive actions). */
  typeToConfirm?: string;
  resolve: (ok: boolean) => void;
}
export const pending = writable<ConfirmReq | null>(null);

export function confirm(req: Omit<ConfirmReq, 'resolve'>): Promise<boolean> {
  return new Promise((resolve) => pending.set({ ...req, resolve }));
}
