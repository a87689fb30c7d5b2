import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * This process's name in leases, presence locks and records: the host, the process id, and a
 * random part (a process id is reused after a restart, and a restarted node is another node).
 */
export const NODE_ID = `${hostname().slice(0, 40)}:${process.pid}:${randomBytes(3).toString('hex')}`;
