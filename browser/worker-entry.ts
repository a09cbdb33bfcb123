/**
 * The default entry of a WebWorkerPool's workers: no functions of its own,
 * only the module URLs the pool hands it. Apps that bundle their functions
 * into the worker give the pool an entry of their own (see worker-runtime.ts).
 */
import { serveFunctions } from './worker-runtime.ts'

serveFunctions()
