// Pages whose only script is their charts.
import { drawPageCharts } from "./charts.js";

drawPageCharts();
